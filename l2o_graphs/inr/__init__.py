"""Implicit neural representations: SIRENs, a batched fitter, and sharded INR sets of MNIST and
Fashion-MNIST (the paper's INR classification and editing data)."""
from l2o_graphs.inr.dataset import (INR_DATASETS, PROTOCOLS, SPLITS, InrSet, InrSetSpec, default_folder, inr_set_spec,
                                    load_inr_set, make_inr_set)
from l2o_graphs.inr.fit import FIT_LR, FIT_STEPS, fit_sirens
from l2o_graphs.inr.siren import (INIT_SCHEMES, OMEGA_0, SIREN_SIZES, Sine, Siren, SirenProbe, image_grid,
                                  siren_activations, siren_apply, siren_init)

__all__ = ["INR_DATASETS", "PROTOCOLS", "INIT_SCHEMES", "inr_set_spec", "SPLITS", "InrSet", "InrSetSpec",
           "default_folder", "load_inr_set", "make_inr_set",
           "FIT_LR", "FIT_STEPS", "fit_sirens", "OMEGA_0", "SIREN_SIZES", "Sine", "Siren", "SirenProbe", "image_grid",
           "siren_activations", "siren_apply", "siren_init"]
