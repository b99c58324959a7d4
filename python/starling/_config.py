"""Job configs from Python: a dict, TOML text or a TOML file, as the TOML the Rust side reads."""
import math
import os
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def loads(text):
    """The dict of TOML `text`."""
    return tomllib.loads(text)


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return ("-" if v < 0 else "") + ("nan" if math.isnan(v) else "inf")
        return repr(v)
    if isinstance(v, (str, os.PathLike)):
        s = os.fspath(v)
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} into a job config")


def dumps(d, prefix=""):
    """TOML text of a nested dict: scalars first, then one table per nested dict."""
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif v is not None:
            lines.append(f"{k} = {_value(v)}")
    out = ""
    if lines:
        out += (f"[{prefix}]\n" if prefix else "") + "\n".join(lines) + "\n"
    for k, v in tables:
        out += dumps(v, f"{prefix}.{k}" if prefix else k)
    return out


def merge(base, extra):
    """`base` with `extra` merged in, nested dicts key by key."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def to_toml(config):
    """TOML text for `config`: None (defaults), a dict, TOML text, or a path to a TOML file."""
    if config is None:
        return ""
    if isinstance(config, dict):
        return dumps(config)
    if isinstance(config, os.PathLike) or (isinstance(config, str) and "\n" not in config and config.endswith(".toml")):
        with open(config, encoding="utf-8") as fh:
            return fh.read()
    if isinstance(config, str):
        return config
    raise TypeError(f"config must be a dict, TOML text or a .toml path, not {type(config).__name__}")
