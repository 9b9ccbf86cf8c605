"""Recipe yaml files that extend another one (``base_hparams``).

A yaml with a top-level ``base_hparams: <file>`` key (a path relative to it)
is a set of overrides of that base file, HyperPyYAML tags included (for
example ``output_folder: !ref results/demo/<seed>``). Command-line overrides
apply on top; an override given twice keeps its last value, as options do
on a command line. Files are read with ruamel.yaml's round-trip loader, the
one HyperPyYAML itself uses, which keeps tags as they are instead of trying
to construct them.

Authors
-------
speechbrain-cmcr contributors
"""

import io
import logging
import os

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml
from hyperpyyaml.core import recursive_update
from ruamel.yaml.nodes import MappingNode

BASE_KEY = "base_hparams"

logger = logging.getLogger(__name__)


def _round_trip_yaml():
    return ruamel.yaml.YAML(typ="rt")


def resolve_hparams_file(hparams_file, overrides=None):
    """Returns the yaml file to load and the overrides to apply to it.

    Arguments
    ---------
    hparams_file : str
        A recipe yaml, complete or with a ``base_hparams`` key.
    overrides : str or dict, optional
        Overrides from the command line (yaml text, as
        ``speechbrain.parse_arguments`` returns them).

    Returns
    -------
    hparams_file : str
        The file to load: ``hparams_file`` or its base.
    overrides : str or dict or None
        What to apply to it: ``overrides`` unchanged for a complete file,
        else the extending file's keys (tags kept) updated by ``overrides``,
        as yaml text.

    Raises
    ------
    FileNotFoundError
        If the base file does not exist.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> _ = (tmp / "base.yaml").write("seed: 1\\nout: !ref r/<seed>\\n")
    >>> extending = "base_hparams: base.yaml\\nout: !ref x/<seed>\\n"
    >>> _ = (tmp / "x.yaml").write(extending)
    >>> base, overrides = resolve_hparams_file(str(tmp / "x.yaml"), "seed: 2")
    >>> os.path.basename(base)
    'base.yaml'
    >>> print(overrides.strip())
    out: !ref x/<seed>
    seed: 2
    """
    yaml = _round_trip_yaml()
    with open(hparams_file, encoding="utf-8") as fin:
        content = yaml.load(fin)
    if not isinstance(content, dict) or BASE_KEY not in content:
        return hparams_file, overrides
    base = os.path.join(
        os.path.dirname(os.path.abspath(hparams_file)), content.pop(BASE_KEY)
    )
    if not os.path.isfile(base):
        raise FileNotFoundError(
            f"{hparams_file}: its {BASE_KEY} file {base} does not exist"
        )
    if overrides:
        if isinstance(overrides, str):
            overrides = yaml.load(overrides)
        recursive_update(content, overrides, must_match=False)
    text = io.StringIO()
    yaml.dump(content, text)
    return base, text.getvalue()


def last_overrides_win(overrides):
    """Override text in which a key given more than once keeps its last
    value (``--lr=1 --lr=2`` means lr 2), with a warning; yaml itself
    refuses repeated keys.

    Arguments
    ---------
    overrides : str or dict or None
        Overrides as ``speechbrain.parse_arguments`` returns them.

    Returns
    -------
    str or dict or None
        ``overrides``, with repeated top-level keys merged.

    Example
    -------
    >>> print(last_overrides_win("lr: 1\\nout: !ref r/<lr>\\nlr: 2\\n"), end="")
    lr: 2
    out: !ref r/<lr>
    """
    if not isinstance(overrides, str):
        return overrides
    yaml = _round_trip_yaml()
    node = yaml.compose(overrides)
    if not isinstance(node, MappingNode):
        return overrides
    last = {key.value: (key, value) for key, value in node.value}
    if len(last) == len(node.value):
        return overrides
    for name in last:
        given = [v.value for k, v in node.value if k.value == name]
        if len(given) > 1:
            logger.warning(
                "%s given %d times (%s): the last, %s, is used",
                name,
                len(given),
                ", ".join(map(str, given)),
                given[-1],
            )
    node.value = list(last.values())
    text = io.StringIO()
    yaml.serialize(node, text)
    return text.getvalue()


def load_hparams(hparams_file, overrides=None):
    """Loads a recipe yaml, following ``base_hparams``.

    Arguments
    ---------
    hparams_file : str
        A recipe yaml, complete or with a ``base_hparams`` key.
    overrides : str or dict, optional
        Overrides applied on top.

    Returns
    -------
    hparams : dict
        The loaded hyperparameters.
    hparams_file : str
        The file that was loaded (the base, for an extending file).
    overrides : str or dict or None
        The overrides that were applied to it.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> _ = (tmp / "base.yaml").write("seed: 1\\nout: !ref r/<seed>\\n")
    >>> extending = "base_hparams: base.yaml\\nout: !ref x/<seed>\\n"
    >>> _ = (tmp / "x.yaml").write(extending)
    >>> hparams, _, _ = load_hparams(str(tmp / "x.yaml"), "seed: 2")
    >>> hparams["out"]
    'x/2'
    """
    overrides = last_overrides_win(overrides)
    hparams_file, overrides = resolve_hparams_file(hparams_file, overrides)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    return hparams, hparams_file, overrides
