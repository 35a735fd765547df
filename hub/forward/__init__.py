"""Store-and-forward: a durable outbound queue delivering stored objects to PACS/VNA targets."""
