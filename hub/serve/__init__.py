"""Processes and wiring: the server, reader processes and their relay to the primary, the event
loop, and the connection and upload-rate limits of the public port."""
