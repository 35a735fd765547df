"""Configuration kept in the index: named entries grouped in scopes, each scope versioned."""
