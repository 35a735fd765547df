"""The state of the running hub for its administrator (``GET /api/admin/system``)."""
