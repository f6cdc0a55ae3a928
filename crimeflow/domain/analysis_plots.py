"""The analyst report's figures: the hour x weekday arrest-rate heat map and the area map.

Figures are built with matplotlib's object API (no pyplot state, safe in worker threads) and
returned as PNG bytes, which the report embeds inline.
"""

from __future__ import annotations

import io

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from crimeflow.domain.analysis import MIN_CELL_INCIDENTS, WEEKDAYS, Analysis


def figure_png(figure: Figure, dpi: int = 90) -> bytes:
    """A figure's PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def heat_map_png(analysis: Analysis) -> bytes:
    """Arrest rate by weekday (rows) x hour (columns); cells with too few incidents left blank."""
    rates = np.array(
        [[np.nan if v is None else v for v in row] for row in analysis.heat_rate], dtype=float
    )
    figure = Figure(figsize=(9, 3.4))
    ax = figure.subplots()
    image = ax.imshow(np.ma.masked_invalid(rates) * 100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(24), [str(h) for h in range(24)], fontsize=7)
    ax.set_yticks(range(7), list(WEEKDAYS), fontsize=8)
    ax.set_xlabel("hour of the day (Chicago time)")
    ax.set_title(
        f"Arrest rate (%) by hour and weekday, {analysis.month} "
        f"(blank: fewer than {MIN_CELL_INCIDENTS} incidents)",
        fontsize=10,
    )
    figure.colorbar(image, ax=ax, label="arrest rate (%)", fraction=0.03)
    figure.tight_layout()
    return figure_png(figure)


def area_map_png(analysis: Analysis, areas: gpd.GeoDataFrame) -> bytes:
    """The arrest rate per community area on the areas' shapes (grey: no incident)."""
    rates = pd.DataFrame(
        {
            "community_area": [int(r.group) for r in analysis.by_area if r.group.isdigit()],
            "rate": [r.rate * 100 for r in analysis.by_area if r.group.isdigit()],
        }
    )
    shapes = areas.assign(community_area=areas["community_area"].astype(int))
    joined = shapes.merge(rates, on="community_area", how="left")
    figure = Figure(figsize=(5.5, 6.5))
    ax = figure.subplots()
    joined.plot(
        column="rate",
        ax=ax,
        cmap="viridis",
        legend=True,
        edgecolor="white",
        linewidth=0.3,
        missing_kwds={"color": "lightgrey"},
        legend_kwds={"label": "arrest rate (%)", "shrink": 0.6},
    )
    ax.set_axis_off()
    ax.set_title(f"Arrest rate by community area, {analysis.month}", fontsize=10)
    figure.tight_layout()
    return figure_png(figure)
