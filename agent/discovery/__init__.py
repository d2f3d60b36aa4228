"""Finding voters: the offline catalog, vetting model folders and Hub models, mapping their
labels onto the task's (by names, by the LLM, by calibration on the pilot)."""
