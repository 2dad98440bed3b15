"""parle_hpc: Parle (Chaudhari et al., 2017) for HPC clusters.

``n`` replicas of a network, one per rank, each taking ``L`` local Entropy-SGD steps and
elastically coupled to the mean of the replicas, communicating once every ``L`` steps.
"""

__version__ = "0.1.0"
