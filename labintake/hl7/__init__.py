"""Pure HL7 v2 reading and writing: no sockets, no SQL.

Reading: `segments` (split on demand), `escapes`, `charset`, `header`, `reader` (an order),
`order_fields`, `datatypes`, `structure`, `batch` (FHS/BHS), `limits`.
Answering senders: `ack`. Reading what a receiver answers: `ack_reply`.
Writing: `order_builder` (orders to the LIS, on the `layout` hl7apy's reference data gives),
`replies` (order responses to placers), `escaping` (outbound escape sequences).
"""
