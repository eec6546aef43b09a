#!/usr/bin/env python3
"""Reference metrics for workload_metrics_test, computed by the libraries the benchmarks use:
mean average precision as OGB's Evaluator for ogbg-molpcba (ogb/graphproppred/evaluate.py, eval_ap:
scikit-learn's average_precision_score per task over its non-NaN labels, averaged over the tasks with
both classes), and SSIM as fastMRI's evaluate.py (scikit-image's structural_similarity with
win_size=7, K1=0.01, K2=0.03, data_range=gt.max()).
Reads the JSON cases written by the C++ test; prints one line per case: the mean AP ("error" where
OGB raises), or the SSIM of each image of the case.
Usage: metric_reference.py CASES.json"""
import json
import sys

import numpy as np
from skimage.metrics import structural_similarity
from sklearn.metrics import average_precision_score


def ogb_eval_ap(y_true, y_pred):
    """OGB's eval_ap, transcribed."""
    ap_list = []
    for i in range(y_true.shape[1]):
        if np.sum(y_true[:, i] == 1) > 0 and np.sum(y_true[:, i] == 0) > 0:
            is_labeled = y_true[:, i] == y_true[:, i]
            ap_list.append(average_precision_score(y_true[is_labeled, i], y_pred[is_labeled, i]))
    if len(ap_list) == 0:
        raise RuntimeError("No positively labeled data available. Cannot compute Average Precision.")
    return sum(ap_list) / len(ap_list)


def f32(values):
    """The test's float32 values (printed with 9 significant digits) as float64, exactly."""
    return np.array(values, dtype=np.float32).astype(np.float64)


cases = json.load(open(sys.argv[1]))
for c in cases["ap"]:
    t = c["tasks"]
    y_true = f32(c["y_true"]).reshape(-1, t)
    y_score = f32(c["y_score"]).reshape(-1, t)
    try:
        print(repr(float(ogb_eval_ap(y_true, y_score))))
    except RuntimeError:
        print("error")
for c in cases["ssim"]:
    shape = (c["n"], c["h"], c["w"])
    gt = f32(c["gt"]).reshape(shape)
    pred = f32(c["pred"]).reshape(shape)
    print(" ".join(repr(float(structural_similarity(gt[i], pred[i], win_size=7, K1=0.01, K2=0.03,
                                                    data_range=gt[i].max())))
                   for i in range(c["n"])))
