# oneDNN for the single-precision convolutions and the bf16 products (Trainer(precision="bf16")): PyPI's
# onednn-devel-cpu-gomp (headers and CMake config; its runtime onednn-cpu-gomp installs libdnnl.so into
# <prefix>/lib), else a system oneDNN. RBP_NATIVE_ONEDNN: AUTO (default: use it when found), ON (fail when
# not found), OFF (never: the portable Eigen convolutions and bf16 rounding through the float32 kernels,
# which pass the same tests). Sets RBP_HAVE_ONEDNN (then CMakeLists.txt builds the plugin
# librbp_onednn.so) and the imported target DNNL::dnnl when used. Needs Python_EXECUTABLE.
#
# The wheels install into the environment's prefix (data files), not into a package: in pip's isolated
# build that prefix is the build environment's overlay, found as the folder three levels above a
# site-packages on the interpreter's sys.path.
set(RBP_NATIVE_ONEDNN "AUTO" CACHE STRING "Use oneDNN for the float32 convolutions and the bf16 products: AUTO, ON or OFF")
set_property(CACHE RBP_NATIVE_ONEDNN PROPERTY STRINGS AUTO ON OFF)
set(RBP_HAVE_ONEDNN OFF)
if(WIN32 AND NOT RBP_NATIVE_ONEDNN STREQUAL "OFF")
  # The core opens the oneDNN plugin with dlopen (cpp/src/onednn_plugin.cpp), which Windows lacks.
  if(RBP_NATIVE_ONEDNN STREQUAL "ON")
    message(FATAL_ERROR "RBP_NATIVE_ONEDNN=ON: the oneDNN plugin is not supported on Windows")
  endif()
  message(STATUS "rbp-native: no oneDNN plugin on Windows; the convolutions and bf16 products use the portable Eigen path")
elseif(NOT RBP_NATIVE_ONEDNN STREQUAL "OFF")
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
            "import os, sys; c = [sys.prefix] + [os.path.normpath(os.path.join(s, '..', '..', '..')) for s in sys.path if s.endswith('site-packages')]; print(';'.join(dict.fromkeys(p for p in c if os.path.isfile(os.path.join(p, 'lib', 'cmake', 'dnnl', 'dnnl-config.cmake')))))"
    OUTPUT_VARIABLE RBP_ONEDNN_PREFIXES
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND CMAKE_PREFIX_PATH ${RBP_ONEDNN_PREFIXES})
  if(RBP_NATIVE_ONEDNN STREQUAL "ON")
    find_package(dnnl 3.2 CONFIG REQUIRED)
  else()
    find_package(dnnl 3.2 CONFIG QUIET)
  endif()
  if(dnnl_FOUND)
    set(RBP_HAVE_ONEDNN ON)
    message(STATUS "rbp-native: oneDNN ${dnnl_VERSION} from ${dnnl_DIR}")
  else()
    message(STATUS "rbp-native: oneDNN not found; the convolutions and bf16 products use the portable Eigen path")
  endif()
endif()
