"""metactl: meta-trained robot controllers from simulation to hardware."""

__version__ = "0.2.0"
