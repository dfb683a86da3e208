-- "Mark all read" without holding the notifications projector for every row it covers.
--
-- An InboxRead event reads every notification of its recipient up to a `seq`. The
-- projector used to set `read_at` on all of those rows in the batch that applied the
-- event: ~23 µs a row, so a client clearing an inbox of 200,000 notifications held the
-- one notifications projector -- every tenant's notifications and live events -- for
-- about 5 s. Now the batch records the read here and marks at most a bounded number of
-- rows; each later batch (and each idle poll) marks the next share, newest rows first,
-- until the mark is done and deleted. `read_at` keeps its meaning (the first read that
-- covered the row), so nothing that reads the notifications table changes; a mark
-- still here is a read whose older rows are still being marked.
--
-- Owned by the notifications projector (rebuilt with it; a rebuild finishes every mark
-- before it swaps the tables in). `below_seq`: the rows with a smaller seq (and at most
-- `up_to_seq`) are still to be marked.
CREATE TABLE IF NOT EXISTS notification_read_marks (
    tenant_id    uuid        NOT NULL,
    recipient_id uuid        NOT NULL,
    up_to_seq    bigint      NOT NULL,
    read_at      timestamptz NOT NULL,  -- the InboxRead event's recorded_at
    below_seq    bigint      NOT NULL,
    PRIMARY KEY (tenant_id, recipient_id, up_to_seq)
);
SELECT chronicle_protect_read_table('notification_read_marks');
SELECT chronicle_analyst_readable('notification_read_marks');
