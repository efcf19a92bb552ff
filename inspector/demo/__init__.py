"""The demo (`inspector demo`): its recipe, local broker and subscriber. Not imported by
the runtime.
"""
