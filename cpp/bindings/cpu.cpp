// rbp_native._cpu: which instruction sets this CPU *and* the operating system support, for the
// loader that picks a compiled variant of the core (rbp_native/_native.py). Plain C API: no Eigen,
// no pybind11, compiled for the baseline, so it imports on every CPU.
//
// GCC's and Clang's __builtin_cpu_supports read CPUID and, for AVX and AVX-512, also check with
// XGETBV that the OS saves the wide registers (XCR0), so a feature reported here is usable.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace {

PyObject* features(PyObject*, PyObject*) {
    PyObject* result = PyList_New(0);
    if (!result) return nullptr;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    struct Feature {
        const char* name;
        int present;
    };
    const Feature table[] = {
        {"sse2", __builtin_cpu_supports("sse2")},         {"avx", __builtin_cpu_supports("avx")},
        {"avx2", __builtin_cpu_supports("avx2")},         {"fma", __builtin_cpu_supports("fma")},
        {"f16c", __builtin_cpu_supports("f16c")},         {"avx512f", __builtin_cpu_supports("avx512f")},
        {"avx512cd", __builtin_cpu_supports("avx512cd")}, {"avx512vl", __builtin_cpu_supports("avx512vl")},
        {"avx512bw", __builtin_cpu_supports("avx512bw")}, {"avx512dq", __builtin_cpu_supports("avx512dq")},
    };
    for (const Feature& f : table) {
        if (!f.present) continue;
        PyObject* name = PyUnicode_FromString(f.name);
        if (!name || PyList_Append(result, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(result);
            return nullptr;
        }
        Py_DECREF(name);
    }
#endif
    return result;
}

PyMethodDef methods[] = {
    {"features", features, METH_NOARGS,
     "features() -> list[str]: x86 instruction-set extensions usable here (CPU and OS); empty elsewhere."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cpu", "CPU feature probe of rbp-native.", -1, methods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__cpu() { return PyModule_Create(&module); }
