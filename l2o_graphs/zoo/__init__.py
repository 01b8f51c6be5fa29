"""A zoo of trained CNNs and generalization prediction from their weights."""
from l2o_graphs.zoo.make import ZooEntry, ZooSpec, default_zoo_folder, load_zoo, make_zoo, sample_member, split_of
from l2o_graphs.zoo.predict import PREDICTORS, build_predictor, fit_predictor, kendall_tau, predict_zoo

__all__ = ["ZooEntry", "ZooSpec", "default_zoo_folder", "load_zoo", "make_zoo", "sample_member", "split_of",
           "PREDICTORS", "build_predictor", "fit_predictor", "kendall_tau", "predict_zoo"]
