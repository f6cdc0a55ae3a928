"""How crimeflow runs: the serve script for the embedded default, alerts, image and k8s files."""
