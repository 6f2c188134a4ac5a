"""Compatibility adapters: other trackers' wire shapes translated into calls of arwx's services."""
