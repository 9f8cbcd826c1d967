"""A step journal that keeps nothing: for tests that run plans through the Executor and look at the result."""


class QuietJournal:
    def progress(self, message):
        pass

    def record_plan(self, steps):
        pass

    def step_state(self, index, state, error=None):
        pass

    def note_state(self, index, state, error=None):
        pass
