"""Product recipes: the model, files on disk, checks, edits, imports, the store and the
enrolment cache.
"""
