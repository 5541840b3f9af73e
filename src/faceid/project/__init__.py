"""The project as DVC sees it: model names, what a params edit re-runs, experiments."""
