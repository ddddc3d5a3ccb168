"""What every flow uses: docker's grammar, config, state, the one process boundary, engine facts.
Imports no flow.
"""
