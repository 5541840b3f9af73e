"""params.yaml → typed, frozen dataclasses, one schema module per section.

    engine.py    the typed-YAML engine: ParamsError, from_mapping, load_sections
    dataset.py   crop.py   pairs.py   weights.py   evaluate.py   demo.py
    train.py     the train section and resolve_train_params (the per-run merge rule)
    pipeline.py  every section a pipeline stage reads (PipelineParams, load_pipeline_params)
    whole.py     the whole file, demo included (Params, load_all_params)

This package file imports nothing: a stage's code dependencies are exactly the schema
modules it imports (tools/stage_deps.py), so editing, say, the demo's schema leaves
every pipeline stage up to date.
"""
