"""The radiation dose registry: CT events from dose reports at ingest, effective-dose
estimates, resolved patients and their cumulative profiles (see README.md). The wiring is in
``hub.dose.service``; this package module stays light, since the schema imports the tables."""
