"""The leaf every stage stands on: frames and their pool, queues, atomic files, safe JSON,
hashing, image headers, YAML errors with file:line, stats, COCO helpers, fonts and where
the shipped assets are. Imports nothing else of Inspector.
"""
