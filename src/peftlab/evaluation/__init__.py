"""What is done with a finished run: load it as training held it and score a split again (evaluate),
score log-likelihoods of options or beams (score), or fold a mergeable adapter into its base model and
save it (merge).
"""
