"""Errors raised by the slide converter."""


class ConversionError(Exception):
    """The slide cannot be converted; the message says why in words a user can act on."""
