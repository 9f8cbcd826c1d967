"""Change Execution: pure plans of undoable steps, and the executor that runs and rolls them back."""
