"""Decision: per-class rules that turn detections into a verdict, and the result record
built from it.
"""
