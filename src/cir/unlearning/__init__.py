"""The unlearning run: one loop for every method.

run_config: the loop's options (RunConfig) and the method's, from defaults, YAML and --set.
loop:       epochs of a method's update, each measured; the kept epoch is the last within budget.
"""
