"""Class ids of the synthetic world: the UAVid class list (config/datasets/uavid.yaml)."""

DATASET = "uavid"
CLUTTER = 0
BUILDING = 1
ROAD = 2
TREE = 3
LOW_VEGETATION = 4
MOVING_CAR = 5
STATIC_CAR = 6
HUMAN = 7
NAMES = ("clutter", "building", "road", "tree", "low_vegetation", "moving_car", "static_car", "human")
