# Eigen for the core: PyPI's cmeel-eigen, else a system Eigen3. Defines the imported target
# Eigen3::Eigen (its headers are SYSTEM includes, so the project's warnings skip them).
#
# In pip's isolated build, cmeel-eigen's cmeel.prefix folder is on the interpreter's sys.path (not in
# purelib), so Python is asked where it is; the folders found go onto CMAKE_PREFIX_PATH, where
# find_package looks first. Needs Python_EXECUTABLE (find_package(Python) before this file).
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
          "import os, sys; print(';'.join(p for p in (os.path.join(s, 'cmeel.prefix') for s in sys.path if s) if os.path.isdir(p)))"
  OUTPUT_VARIABLE RBP_CMEEL_PREFIXES
  OUTPUT_STRIP_TRAILING_WHITESPACE)
list(APPEND CMAKE_PREFIX_PATH ${RBP_CMEEL_PREFIXES})
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
message(STATUS "rbp-native: Eigen ${Eigen3_VERSION} from ${Eigen3_DIR}")
