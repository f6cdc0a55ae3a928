"""Where alerts go: the Prefect notification blocks the alert automations send through.

Two channels, each on when its settings are set:

- webhook (`CRIMEFLOW_ALERT_WEBHOOK_URL`): a Custom Webhook block `crimeflow-alerts` that POSTs
  `{"text", "subject", "body", "source"}` as JSON; `text` is subject and body together, which
  Slack-, Mattermost- and Teams-style incoming webhooks display.
- email (`CRIMEFLOW_ALERT_EMAIL_HOST` and `CRIMEFLOW_ALERT_EMAIL_TO`): a block
  `crimeflow-alerts-email` that sends a plain-text mail through that SMTP server.

Prefect 3.8 ships no SMTP notification block (core has Sendgrid only; prefect-email's
`EmailServerCredentials` is a credentials block, not a notification block, so an automation
cannot send through it, and a block class of our own would have to be importable by the Prefect
server). Core's Slack Webhook block hands any URL that is not a Slack webhook to Apprise, whose
`mailto://` plugin speaks SMTP: the email block is that core block holding an Apprise email URL
(stored as a block secret, password included), so any Prefect server can load and send it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode
from uuid import UUID

from crimeflow.contract.settings import PrefectSettings

if TYPE_CHECKING:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

WEBHOOK_BLOCK = "crimeflow-alerts"
EMAIL_BLOCK = "crimeflow-alerts-email"
# Apprise's names of the three ways to talk to an SMTP server.
APPRISE_MODES = {"starttls": "starttls", "ssl": "ssl", "none": "insecure"}


def webhook_block(url: str) -> CustomWebhookNotificationBlock:
    """The notification block that POSTs subject and body as JSON to `url`."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    # The URL is kept as a secret value (webhook URLs usually embed their token), so the UI and
    # the API show it masked; `{{url}}` is filled in from the secrets at send time.
    return CustomWebhookNotificationBlock(
        name="crimeflow",
        url="{{url}}",
        method="POST",
        json_data={
            "text": "{{subject}}\n\n{{body}}",
            "subject": "{{subject}}",
            "body": "{{body}}",
            "source": "{{name}}",
        },
        secrets={"url": url},
    )


def email_enabled(prefect: PrefectSettings) -> bool:
    """Email alerts are on when both an SMTP server and a recipient are set."""
    return bool(prefect.alert_email_host and recipients(prefect))


def recipients(prefect: PrefectSettings) -> list[str]:
    """The alert emails' recipients, from the comma-separated setting."""
    return [address.strip() for address in prefect.alert_email_to.split(",") if address.strip()]


def sender(prefect: PrefectSettings) -> str:
    """The From address: the setting, else a login that is an address, else crimeflow@HOST."""
    if prefect.alert_email_from:
        return prefect.alert_email_from
    if "@" in prefect.alert_email_username:
        return prefect.alert_email_username
    return f"crimeflow@{prefect.alert_email_host}"


def email_url(prefect: PrefectSettings) -> str:
    """The Apprise `mailto://`/`mailtos://` URL for the SMTP settings (password included)."""
    # Written by hand: apprise's own NotifyEmail.url() drops `from` when there are several
    # recipients and a login, and the mail would then come from LOGIN@HOST.
    password = prefect.alert_email_password
    login = quote(prefect.alert_email_username, safe="")
    if login and password:
        login += ":" + quote(password.get_secret_value(), safe="")
    scheme = "mailto" if prefect.alert_email_tls == "none" else "mailtos"
    host = f"{login}@" if login else ""
    targets = "/".join(quote(address, safe="") for address in recipients(prefect))
    query = urlencode(
        {
            "from": sender(prefect),
            "mode": APPRISE_MODES[prefect.alert_email_tls],
            # Plain text: the alert bodies are lines of text with bare links.
            "format": "text",
        }
    )
    return (
        f"{scheme}://{host}{prefect.alert_email_host}:{prefect.alert_email_port}/{targets}?{query}"
    )


def email_block(prefect: PrefectSettings) -> SlackWebhook:
    """The notification block that mails subject and body through the SMTP settings."""
    from prefect.blocks.notifications import SlackWebhook

    return SlackWebhook(url=email_url(prefect), notify_type="warning")


def save_channels(prefect: PrefectSettings) -> list[UUID]:
    """Save the block of every configured channel; their block document ids (may be [])."""
    ids: list[UUID] = []
    if prefect.alert_webhook_url:
        url = prefect.alert_webhook_url.get_secret_value()
        ids.append(webhook_block(url).save(WEBHOOK_BLOCK, overwrite=True))
    if email_enabled(prefect):
        ids.append(email_block(prefect).save(EMAIL_BLOCK, overwrite=True))
    return ids
