"""The app's own environment: roles.yaml's `app.env` and `app.secrets`, with what `fab env.set`/`env.unset` did.

For each name, the first layer that has it wins:
  1. an override of `fab env.set`: a plain value in `<state_dir>/<cluster>/env.json` ("set"), or a secret in
     its own 0600 file `<state_dir>/<cluster>/secrets/env/NAME` (beside whipup's own secrets, see `vault`);
  2. a name `fab env.unset` hid (env.json "unset"): roles.yaml declares it, and the app does not get it;
  3. roles.yaml: `app.env` (plain), `app.secrets` (a secret's value is the file secrets/env/NAME, or with
     `ssm:` the SSM Parameter Store parameter, read with decryption through the target's cloud).
A declared secret without a value is an error naming the secret, the file or parameter and the command that
sets it. `resolve` gives the `EnvVar`s, `values` the plain dict for shared/.env. Parsing the task's arguments,
the store's changes and what they change (masked) are pure functions here; `deploy/envchange` runs them.
"""
from .edit import (MASK, apply_set, apply_unset, changes, listing, parse_assignment, parse_lines, parse_names,
                   shown, summary)
from .resolve import EnvVar, Missing, cloud_ssm, declared, entries, once, resolve, secret_values, values
from .store import EnvError, Store, load_store, read_secret, save_store, secrets_dir, store_path

__all__ = ["MASK", "EnvError", "EnvVar", "Missing", "Store", "apply_set", "apply_unset", "changes", "cloud_ssm",
           "declared", "entries", "listing", "load_store", "once", "parse_assignment", "parse_lines", "parse_names",
           "read_secret", "resolve", "save_store", "secret_values", "secrets_dir", "shown", "store_path", "summary",
           "values"]
