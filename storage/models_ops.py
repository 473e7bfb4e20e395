"""The tables of several instances on one database, of webhooks and of OAuth2 grants (schema 3, 0.3.0).

Part of storage.models, which imports them: import them from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from ticketd.storage.models import Ticket


class WebhookStatus:
    PENDING = "pending"
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # refused for good (4xx other than 408 / 429), or still failing after give_up_after


class WebhookDelivery(Model):
    """One ticket event for one configured webhook: written with the event, POSTed by daemon.webhook_sender.

    The body is fixed when the row is written (the event as it was); the URL and signing key are
    the configuration's at delivery, so a corrected URL or a new key takes effect on a reload.
    """

    _no_comments = True
    id = fields.BigIntField(primary_key=True)  # the order a webhook's deliveries go in
    webhook = fields.CharField(max_length=100)  # [[webhooks]] name
    event = fields.CharField(max_length=30)  # "created", "agent_reply", ... (daemon.config_webhooks.EVENTS)
    event_id = fields.CharField(max_length=64)  # the payload's "id" and X-Ticketd-Event-Id: one per event
    ticket: fields.ForeignKeyNullableRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="webhook_deliveries", null=True, on_delete=fields.SET_NULL)
    body = fields.TextField()  # the JSON POSTed, as written
    status = fields.CharField(max_length=10, default=WebhookStatus.PENDING)
    attempts = fields.IntField(default=0)
    next_try_at = fields.DatetimeField()
    created_at = fields.DatetimeField()
    delivered_at = fields.DatetimeField(null=True)
    last_error = fields.TextField(default="")
    # Which instance (daemon.instance) is POSTing it, until when; an expired claim is free again.
    claimed_by = fields.CharField(max_length=200, null=True)
    claimed_until = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_delivery"
        unique_together = (("webhook", "event_id"),)  # an event once per webhook
        # (webhook, status, id): a webhook's first pending row, the one its sender claims next.
        indexes = (("webhook", "status", "id"), ("status", "created_at"), ("ticket",))


class MailboxLease(Model):
    """Which instance fetches an IMAP mailbox, until when (daemon.leases); times are the database's clock.

    A row per mailbox, taken and renewed by one INSERT ... ON CONFLICT DO UPDATE (storage.leases),
    so two instances can never both hold it: the second finds it held and unexpired.
    """

    _no_comments = True
    mailbox = fields.CharField(max_length=100, primary_key=True)  # the [[mailboxes]] name
    holder = fields.CharField(max_length=200)  # the instance id (host:pid:random), see ``Instance``
    acquired_at = fields.DatetimeField()  # when this holder took it
    renewed_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()  # past it any instance may take it; a clean stop sets it to now

    class Meta:
        table = "mailbox_lease"


class Instance(Model):
    """A running `ticketd run`, for `ticketd status`: seen at every lease renewal, removed at a clean stop."""

    _no_comments = True
    id = fields.CharField(max_length=200, primary_key=True)  # host:pid:random
    name = fields.CharField(max_length=100)  # [instance] name, the host name by default
    host = fields.CharField(max_length=255)
    pid = fields.IntField()
    started_at = fields.DatetimeField()
    last_seen = fields.DatetimeField()  # a SIGKILLed instance's row stops here (pruned after a day)
    lease_ms = fields.IntField(default=30_000)  # its [instance] lease_seconds, in ms: it renews every third of it

    class Meta:
        table = "instance"


class OAuthToken(Model):
    """One OAuth2 login's grant (daemon.oauth): a mailbox's IMAP ("mailbox:NAME") or the SMTP one ("smtp").

    The refresh token is stored as the endpoint gave it, protected as the database is (its file's
    mode, the PostgreSQL role): whoever reads this table can read the tickets too.
    """

    _no_comments = True
    peer = fields.CharField(max_length=120, primary_key=True)
    refresh_token = fields.TextField()
    access_token = fields.TextField(default="")
    expires_at = fields.DatetimeField(null=True)  # the access token's end
    refresh_expires_at = fields.DatetimeField(null=True)  # the refresh token's end, if the endpoint told it
    last_error = fields.TextField(default="")  # "" while the grant works; set once per incident
    warned_at = fields.DatetimeField(null=True)  # the admin was told the refresh token nears its end
    updated_at = fields.DatetimeField()

    class Meta:
        table = "oauth_token"
