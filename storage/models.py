"""Database tables: mailboxes, inbound mail, tickets, articles, attachments, outbox, due steps, mailbox health, leases."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

# Every model sets ``_no_comments``: else Tortoise re-reads this file's source once per model
# looking for field comments (~70 ms of every start-up); we keep none there for it to find.
#
# A column added after a release has ``db_default`` beside ``default``: the CREATE TABLE of a new
# database then says DEFAULT as the ALTER TABLE of an upgraded one does (storage.columns), and
# a writer that names only the older columns still fills the new ones.


class InboundStatus:
    """Where an inbound row stands; every row ends in one of the final states."""

    RECEIVED = "received"  # raw bytes committed, not processed yet
    PROCESSED = "processed"  # an article of a ticket
    DUPLICATE = "duplicate"  # the same mail was already processed (see duplicate_of)
    QUARANTINED = "quarantined"  # unreadable, too large, or held by a filter: see reason
    REJECTED = "rejected"  # refused by a filter (a blocked sender): kept, never a ticket
    FINAL = (PROCESSED, DUPLICATE, QUARANTINED, REJECTED)


class Mailbox(Model):
    """Sync state of one monitored IMAP folder."""

    _no_comments = True
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    uidvalidity = fields.BigIntField(null=True)
    last_uid = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "mailbox"


class InboundMessage(Model):
    """One fetched (or piped-in) message, stored raw before anything else happens."""

    _no_comments = True
    id = fields.BigIntField(primary_key=True)
    mailbox: fields.ForeignKeyNullableRelation[Mailbox] = fields.ForeignKeyField(
        "models.Mailbox", related_name="messages", null=True, on_delete=fields.RESTRICT)
    uidvalidity = fields.BigIntField(null=True)
    uid = fields.BigIntField(null=True)
    size = fields.BigIntField()
    # Only the header was fetched (over the size limit): never delete or move it on the server.
    truncated = fields.BooleanField(default=False)
    # Indexed by Meta.indexes only: each index is one more page written per row (see storage.legacy).
    sha256 = fields.CharField(max_length=64)
    message_id = fields.CharField(max_length=998, default="")
    status = fields.CharField(max_length=20, default=InboundStatus.RECEIVED)
    reason = fields.TextField(default="")
    attempts = fields.IntField(default=0)
    # Each filter's verdict [(name, action, reason, details)], so a decision can be explained.
    verdicts = fields.JSONField(default=list)
    # True once the server-side after-action (seen / delete / move) is done.
    server_done = fields.BooleanField(default=False)
    ticket: fields.ForeignKeyNullableRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="inbound", null=True, on_delete=fields.SET_NULL)
    duplicate_of: fields.ForeignKeyNullableRelation[InboundMessage] = fields.ForeignKeyField(
        "models.InboundMessage", related_name="duplicates", null=True, on_delete=fields.SET_NULL)
    received_at = fields.DatetimeField(auto_now_add=True)
    processed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "inbound_message"
        unique_together = (("mailbox", "uidvalidity", "uid"),)
        # Each hot lookup gets an index with all its equality columns, so the planner never
        # picks the status index (which would walk every processed row, however old).
        indexes = (("message_id", "status"), ("sha256", "status"), ("mailbox", "uidvalidity", "server_done"),
                   ("status", "mailbox"), ("ticket",))


class InboundSource(Model):
    """The raw bytes of an inbound message, apart: no lookup on inbound_message walks them."""

    _no_comments = True
    inbound: fields.OneToOneRelation[InboundMessage] = fields.OneToOneField(
        "models.InboundMessage", related_name="source", on_delete=fields.CASCADE, primary_key=True)
    content = fields.BinaryField()

    class Meta:
        table = "inbound_raw"


class Counter(Model):
    """Named sequences (ticket numbers) that also work across instances."""

    _no_comments = True
    name = fields.CharField(max_length=50, primary_key=True)
    value = fields.BigIntField(default=0)

    class Meta:
        table = "counter"


class Ticket(Model):
    _no_comments = True
    id = fields.BigIntField(primary_key=True)
    number = fields.BigIntField(unique=True)
    subject = fields.TextField()
    status = fields.CharField(max_length=20, default="new", db_index=True)
    priority = fields.CharField(max_length=5, default="P3")
    category = fields.CharField(max_length=100, default="")
    queue = fields.CharField(max_length=100, default="")
    mailbox = fields.CharField(max_length=100, default="")
    requester = fields.CharField(max_length=320, db_index=True)
    requester_name = fields.TextField(default="")
    assignee = fields.CharField(max_length=320, null=True)
    fired_rules = fields.JSONField(default=list)
    tags = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    first_response_at = fields.DatetimeField(null=True)  # the first agent reply relayed to the customer
    solved_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    reopen_count = fields.IntField(default=0, db_default=0)
    csat = fields.IntField(null=True)  # the customer's satisfaction rating, once given
    linked_to = fields.BigIntField(null=True)  # number of an earlier (closed) ticket this one continues
    agent_replies = fields.IntField(default=0, db_default=0)

    class Meta:
        table = "ticket"
        # Each assignment counts the open tickets of the queue's agents (daemon.assign): without
        # it that count walks every ticket with the status, a table that grows with the history.
        indexes = (("assignee", "status"),)


class Participant(Model):
    """Addresses allowed to add to a ticket by subject tag: the requester and Cc'd people."""

    _no_comments = True
    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="participants", on_delete=fields.CASCADE)
    email = fields.CharField(max_length=320)
    following = fields.BooleanField(default=True, db_default=True)  # receives the relayed agent replies

    class Meta:
        table = "participant"
        unique_together = (("ticket", "email"),)


class Article(Model):
    _no_comments = True
    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="articles", on_delete=fields.CASCADE)
    inbound: fields.ForeignKeyNullableRelation[InboundMessage] = fields.ForeignKeyField(
        "models.InboundMessage", related_name="articles", null=True, on_delete=fields.SET_NULL)
    direction = fields.CharField(max_length=3)  # "in" | "out"
    sender = fields.TextField(default="")
    to = fields.TextField(default="")
    cc = fields.TextField(default="")
    subject = fields.TextField(default="")
    message_id = fields.CharField(max_length=998, default="", db_index=True)
    in_reply_to = fields.TextField(default="")
    references = fields.TextField(default="")
    date = fields.DatetimeField(null=True)
    text = fields.TextField(default="")
    html = fields.TextField(default="")
    internal = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    author = fields.CharField(max_length=10, default="customer", db_default="customer")  # | "agent" | "system"
    new_text = fields.TextField(default="", db_default="")  # what the writer added: no quote, no signature

    class Meta:
        table = "article"
        indexes = (("ticket", "id"), ("inbound",))  # a ticket's articles; the article of an inbound row


class Attachment(Model):
    """An attachment's bytes; ``filename`` is display data and never used as a path."""

    _no_comments = True
    id = fields.BigIntField(primary_key=True)
    article: fields.ForeignKeyRelation[Article] = fields.ForeignKeyField(
        "models.Article", related_name="attachments", on_delete=fields.CASCADE)
    filename = fields.TextField(default="")
    content_type = fields.CharField(max_length=255, default="application/octet-stream")
    size = fields.BigIntField()
    sha256 = fields.CharField(max_length=64)
    content_id = fields.CharField(max_length=998, default="")
    inline = fields.BooleanField(default=False)

    class Meta:
        table = "attachment"
        indexes = (("article",),)


class AttachmentContent(Model):
    """An attachment's bytes, apart from its description (listing a ticket never reads them)."""

    _no_comments = True
    attachment: fields.OneToOneRelation[Attachment] = fields.OneToOneField(
        "models.Attachment", related_name="data", on_delete=fields.CASCADE, primary_key=True)
    content = fields.BinaryField()

    class Meta:
        table = "attachment_content"


class OutboundStatus:
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"  # sent, then a delivery status notification came back


class OutboundMessage(Model):
    """The transactional outbox: written with the ticket change, delivered by the sender."""

    _no_comments = True
    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyNullableRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="outbound", null=True, on_delete=fields.SET_NULL)
    kind = fields.CharField(max_length=50)
    message_id = fields.CharField(max_length=998, unique=True)
    mail_from = fields.CharField(max_length=320)
    recipients = fields.JSONField()
    # The first recipient, lower case: what per-recipient limits on automatic mail count by.
    recipient = fields.CharField(max_length=320, default="")  # indexed with created_at (Meta)
    automatic = fields.BooleanField(default=False)
    status = fields.CharField(max_length=10, default=OutboundStatus.PENDING)  # indexed with next_try_at
    attempts = fields.IntField(default=0)
    next_try_at = fields.DatetimeField(db_index=True)
    last_error = fields.TextField(default="")
    # Set from the pipeline's clock (not auto_now_add): per-hour limits are tested on simulated time.
    created_at = fields.DatetimeField(db_index=True)
    sent_at = fields.DatetimeField(null=True)
    # Which instance (daemon.instance) is sending the row, and until when no other may take it:
    # several instances on one database never send one row twice (daemon.outbox_due). Real
    # time, not the pipeline's clock. Both NULL when nobody holds it; added by schema version 3.
    claimed_by = fields.CharField(max_length=200, null=True)
    claimed_until = fields.DatetimeField(null=True)
    # Last: SQLite stores columns in order, so reading any other column never follows the
    # message's overflow pages (the sender reads the bytes with the row it sends anyway).
    raw_bytes = fields.BinaryField()

    class Meta:
        table = "outbound_message"
        indexes = (("status", "next_try_at"), ("recipient", "created_at"), ("ticket",))


class Suppression(Model):
    """An address that bounced permanently: no automatic mail to it until ``until``."""

    _no_comments = True
    id = fields.BigIntField(primary_key=True)
    address = fields.CharField(max_length=320, unique=True)
    until = fields.DatetimeField()
    reason = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "suppression"


class Event(Model):
    """What happened to a ticket, for the audit trail and later reports."""

    _no_comments = True
    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="events", on_delete=fields.CASCADE)
    what = fields.CharField(max_length=50)
    detail = fields.JSONField(default=dict)
    at = fields.DatetimeField(auto_now_add=True)
    who = fields.CharField(max_length=320, default="", db_default="")  # an agent's or customer's address, "system"

    class Meta:
        table = "event"
        indexes = (("ticket",),)


class DueStep(Model):
    """A step of a ticket's life cycle that is due at a time; run once, in the transaction of its effect."""

    _no_comments = True
    id = fields.BigIntField(primary_key=True)
    ticket: fields.ForeignKeyRelation[Ticket] = fields.ForeignKeyField(
        "models.Ticket", related_name="due_steps", on_delete=fields.CASCADE)
    kind = fields.CharField(max_length=30)  # "pending_reminder", "auto_solve", "auto_close", "unassigned_report"
    due_at = fields.DatetimeField()
    done_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "due_step"
        # (done_at, due_at): the scheduler's "not done, due by now" walks only what is due.
        indexes = (("done_at", "due_at"), ("ticket",))


class AgentAway(Model):
    """An agent who is away (until ``until``, or until they say otherwise): not assigned new tickets."""

    _no_comments = True
    address = fields.CharField(max_length=320, primary_key=True)
    until = fields.DatetimeField(null=True)
    since = fields.DatetimeField()

    class Meta:
        table = "agent_away"


class MailboxHealth(Model):
    """Each IMAP mailbox's connection as the running daemon last wrote it (daemon.health), for `ticketd status`.

    A table of its own, not columns of ``mailbox``: the hot path updates that one, and a table
    added later is created by generate_schemas where a column would need a migration.
    """

    _no_comments = True
    name = fields.CharField(max_length=100, primary_key=True)
    connected = fields.BooleanField(default=False)
    since = fields.DatetimeField(null=True)  # when it connected, or lost the connection
    last_check_at = fields.DatetimeField(null=True)  # the server last answered a search for new mail
    last_fetch_at = fields.DatetimeField(null=True)  # messages were last fetched
    last_error = fields.TextField(default="")  # one line, any password replaced by ***
    last_error_at = fields.DatetimeField(null=True)
    server_messages = fields.BigIntField(null=True)  # the folder's message count, as the server last said
    server_unfetched = fields.BigIntField(null=True)  # messages on the server not stored yet, at the last look
    updated_at = fields.DatetimeField()  # rewritten every 30 s by a running daemon

    class Meta:
        table = "mailbox_health"


# The tables of several instances, webhooks and OAuth2 grants (0.3.0) live in storage.models_ops;
# imported here, they are this module's models too (Tortoise finds every model in its namespace).
from ticketd.storage.models_ops import Instance, MailboxLease, OAuthToken, WebhookDelivery, WebhookStatus  # noqa: E402

__all__ = [
    "AgentAway", "Article", "Attachment", "AttachmentContent", "Counter", "DueStep", "Event", "InboundMessage",
    "InboundSource", "InboundStatus", "Instance", "Mailbox", "MailboxHealth", "MailboxLease", "OAuthToken",
    "OutboundMessage", "OutboundStatus", "Participant", "Suppression", "Ticket", "WebhookDelivery",
    "WebhookStatus"
]
