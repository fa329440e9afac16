"""Elastic capacity: replica targets per zone from an autoscaling policy, the same in both clocks."""
