"""invrim-radio: radio interferometry for invrim.

Kept light on purpose (invrim imports ``invrim_radio.hooks``, hence this package, to list plugins):
nothing heavy is imported here. Use the submodules::

    from invrim_radio.physics import RadioInterferometry
    from invrim_radio.sky import RadioSky
    from invrim_radio import clean, coverage, nufft, fits
"""
__version__ = "0.1.0"
