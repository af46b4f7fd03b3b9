"""objects engine of geoloc_ros (ROS-free): object-map alignment after ROMAN.

Pipeline stages, one module each:
  segment.py    LiDAR / RGB-D frames -> object segments (base_link)
  track.py      segments -> tracked objects (voxel IoU, >= 2 sightings, duplicate merge)
  descriptor.py centroid, extents, volume, PCA shape, appearance; per-candidate similarity
  submap.py     objects within 15 m, every 10 m of travel, gravity-aligned yaw-only frame
  clipper.py    consistency graph (gravity-aware) + CLIPPER densest-subgraph solver
  register.py   4-DoF weighted least squares with covariance, degeneracy rejection
  align.py      submap-to-submap alignment (ROMAN; plain-CLIPPER baseline)
  ransac.py     RANSAC baseline
  map.py        ObjectMap (map directory) and its builder from a mapping run
  engine.py     ObjectLocalizer: add_scan / add_image / step -> Candidate
  synth.py      synthetic scenes, partial-view submap pairs and LiDAR sweeps (tests, bench)
"""
