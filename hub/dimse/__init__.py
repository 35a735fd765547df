"""The DIMSE door: pynetdicom SCP (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, Modality Worklist)
and SCU helpers that send stored objects unchanged. ``service.setup(app)`` runs the SCP."""
