"""The shipped config validates, and every schema key is documented in config/README.md."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _keys(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for key, sub in schema.get("properties", {}).items():
        name = f"{prefix}{key}"
        nested = sub.get("properties")
        # Leaf keys, and nested objects whose children are documented one by one.
        if nested and any("properties" in v or "description" in v for v in nested.values()):
            out += _keys(sub, prefix=f"{name}.")
        else:
            out.append(name)
    return out


def test_shipped_config_validates():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, schema=str(SCHEMA))


def test_every_config_key_is_documented():
    readme = (REPO / "config" / "README.md").read_text()
    schema = yaml.safe_load(SCHEMA.read_text())
    missing = [k for k in _keys(schema) if f"`{k}`" not in readme and f"`{k}." not in readme]
    assert not missing, f"undocumented config keys: {missing}"


def test_every_config_key_has_a_description():
    schema = yaml.safe_load(SCHEMA.read_text())

    def walk(node, path=""):
        for key, sub in node.get("properties", {}).items():
            yield f"{path}{key}", sub
            yield from walk(sub, f"{path}{key}.")

    undocumented = [p for p, sub in walk(schema) if "description" not in sub
                    and not p.startswith(("qc.n_mads.", "integration.scvi.", "qc.fixed."))]
    assert not undocumented, undocumented


@pytest.mark.parametrize("key, value, message", [
    ("seed", -1, "minimum"),
    ("integration", {"method": "magic"}, "magic"),
    ("qc", {"mito_prefix": "MT-", "ribo_prefixes": ["RPL"], "hb_regex": "^HB", "thresholds": "median"}, "median"),
])
def test_bad_config_is_rejected_with_the_key(key, value, message):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config[key] = value
    with pytest.raises(Exception, match=message):
        validate(config, schema=str(SCHEMA))


def test_every_rule_a_profile_names_exists():
    """set-resources of a profile keyed by a rule name that does not exist is silently ignored
    (scVI never reached the GPU partition when the slurm profile named 'integrate_scvi')."""
    import re

    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:", smk.read_text(), flags=re.M))
    for profile in (REPO / "profiles").glob("*/config.yaml"):
        named = set((yaml.safe_load(profile.read_text()) or {}).get("set-resources", {}) or {})
        assert named <= rules, (profile, sorted(named - rules))
    # the GPU rule of the integration stage declares a gpu resource for the cluster profile
    assert "gpu=" in (REPO / "workflow" / "rules" / "rna_integrate.smk").read_text()
