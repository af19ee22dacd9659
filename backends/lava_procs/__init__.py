"""s4dconf's own Lava Processes and ProcessModels. Lava imports every sibling module of a Process's module when it
looks for models, so the modules here only define classes (no side effects on import) and need lava-nc."""
