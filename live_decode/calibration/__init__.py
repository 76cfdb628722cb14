"""Estimate a setup from a lab's own raw movie: camera, PSF, photophysics, density."""
