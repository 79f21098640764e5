"""Pure HL7 v2 reading and writing: no sockets, no SQL."""
