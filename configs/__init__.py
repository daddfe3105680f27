"""Data files shipped with balloon-gym: scenarios/*.yaml and algos/*.yaml."""
