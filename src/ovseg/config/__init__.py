"""Settings: what a run's models do, from a preset plus params.yaml, typed and checked before any work.

- :mod:`.settings`: the sections (``masks``, ``embed``, ``score``, ...) as frozen dataclasses;
- :mod:`.loading`: presets.yaml and params.yaml resolved into them, ``--set`` overrides, validation;
- :mod:`.registry`: the one shape of a setting that picks an implementation;
- :mod:`.describe`: every knob with its doc, values and each preset's value (``ovseg settings``).
"""

from ovseg.config.loading import (
    PRESETS_FILE,
    apply_overrides,
    deep_merge,
    load_params,
    load_presets,
    parse_override,
    preset_names,
    settings_from_params,
)
from ovseg.config.registry import AUTO, Registry
from ovseg.config.settings import (
    SECTION_TYPES,
    EditSettings,
    EmbedSettings,
    EngineSettings,
    InstancesSettings,
    MasksSettings,
    ScoreSettings,
    SelectSettings,
    Settings,
    VideoSettings,
)

__all__ = [
    "AUTO",
    "PRESETS_FILE",
    "SECTION_TYPES",
    "EditSettings",
    "EmbedSettings",
    "EngineSettings",
    "InstancesSettings",
    "MasksSettings",
    "Registry",
    "ScoreSettings",
    "SelectSettings",
    "Settings",
    "VideoSettings",
    "apply_overrides",
    "deep_merge",
    "load_params",
    "load_presets",
    "parse_override",
    "preset_names",
    "settings_from_params",
]
