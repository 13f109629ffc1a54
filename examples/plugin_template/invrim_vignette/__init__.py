"""An example invrim plugin (see invrim's docs/plugins.md): the forward models ``vignette`` (a real
gain) and ``vignette_fourier`` (a subsampled Fourier transform, real x to complex y)."""
__version__ = "0.1.0"
