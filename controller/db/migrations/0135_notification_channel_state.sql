-- Each notification channel's send under way and its breaker, shared by every controller
-- (controller/notify/channel_state_store.py): a channel has one send at a time across the
-- replicas, and its breaker counts the failures whichever replica saw them. The send's lease
-- (`outbox_id`, `attempt`, `until`) is taken in the outbox's claim, renewed with its row's and
-- given back with its outcome; a controller that dies leaves it to run out.
CREATE TABLE notification_channel_state (
    channel_id  bigint PRIMARY KEY REFERENCES notification_channels(id) ON DELETE CASCADE,
    outbox_id   bigint,
    attempt     integer,
    until       timestamptz,
    failures    integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    opened      integer NOT NULL DEFAULT 0 CHECK (opened >= 0),
    open_until  timestamptz
);
