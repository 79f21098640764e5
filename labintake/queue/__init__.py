"""The clarification queue: held orders, the coder's actions on them, and office queries.

- `labintake.queue.listing`: the queue itself (filters, search, keyset pages, counts);
- `labintake.queue.service`: `ClarificationQueue`, the actions (claim, assign, contact,
  correct, release, reject), each audited and guarded by the order's row version;
- `labintake.queue.detail`: everything the order page and `GET /api/orders/{id}` show;
- `labintake.queue.office_query`: compliant queries to the ordering office (HTML and PDF);
- `labintake.queue.raw_message`: the raw HL7 message, segment by segment with field names.
"""
