"""The browser UI: study browser, slide viewer, ultrasound cine viewer and slide upload."""
