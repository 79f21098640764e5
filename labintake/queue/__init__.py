"""The clarification queue: held orders, the coder's actions on them, and office queries.

- `labintake.queue.listing`: the queue itself (filters, search, keyset pages, counts);
- `labintake.queue.service`: `ClarificationQueue`, the actions (claim, assign, contact,
  correct, release, reject), each audited and guarded by the order's row version;
- `labintake.queue.detail`: everything the order page and `GET /api/orders/{id}` show;
- `labintake.queue.office_query`: compliant queries to the ordering office, one question per
  finding (`query_questions`: the wording and the answers each question offers), printed
  with the lab's letterhead (`query_letterhead`) as a page and a PDF (`query_pdf`);
- `labintake.queue.open_queries`: the open query for the same findings, and closing open
  queries when an order is released, rejected or cancelled;
- `labintake.queue.raw_message`: the raw HL7 message, segment by segment with field names.
"""
