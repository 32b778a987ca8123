"""Exports a tiny two-tower ranking model as a TF Serving SavedModel.

Run it where TensorFlow 2.x is installed (the gateway itself does not need
Python):

    python3 export_model.py --out models/ranker --version 1 --seed 1
    python3 export_model.py --out models/ranker --version 2 --seed 2

Signature "serving_default":
    inputs:  user  int64  [batch]         hash bucket of user_id (10000 buckets)
             cands string [batch, None]   candidate item ids
    outputs: scores float32 [batch, None] one score per candidate
"""
import argparse
import os

import tensorflow as tf

BUCKETS = 10000


class Ranker(tf.Module):
    def __init__(self, seed):
        super().__init__()
        tf.random.set_seed(seed)
        self.users = tf.Variable(tf.random.normal([BUCKETS, 16]))
        self.items = tf.Variable(tf.random.normal([BUCKETS, 16]))

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.int64, name="user"),
        tf.TensorSpec([None, None], tf.string, name="cands"),
    ])
    def serve(self, user, cands):
        u = tf.gather(self.users, user)                                   # [B, 16]
        ids = tf.strings.to_hash_bucket_fast(cands, BUCKETS)              # [B, C]
        v = tf.gather(self.items, ids)                                    # [B, C, 16]
        return {"scores": tf.einsum("bd,bcd->bc", u, v)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    m = Ranker(a.seed)
    path = os.path.join(a.out, str(a.version))
    tf.saved_model.save(m, path, signatures={"serving_default": m.serve})
    print("wrote", path)


if __name__ == "__main__":
    main()
