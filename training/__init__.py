"""Training code for faceage's age models (needs torch; never imported by ``faceage``)."""
