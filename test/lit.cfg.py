# lit configuration for qopt's IR and driver tests.
import os
import lit.formats

config.name = "qopt"
config.test_format = lit.formats.ShTest(False)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.join(config.qopt_src_root, "test")
config.test_exec_root = os.path.join(config.qopt_obj_root, "test")
# Only IR-level folders hold lit tests; unit tests live beside them.
config.excludes = ["runtime", "Exec", "lit.cfg.py", "CMakeLists.txt", "Inputs"]

config.environment["PATH"] = os.pathsep.join(
    [config.qopt_tools_dir, os.path.dirname(config.filecheck), config.environment.get("PATH", os.environ["PATH"])])
# Generated kernels are compiled into a cache (docs/codegen.md): keep the
# tests' entries in the build tree, not in the user's ~/.cache.
config.environment["QOPT_CACHE_DIR"] = os.path.join(config.qopt_obj_root, "test", "kernel-cache")
config.substitutions.append(("%shared", config.shared_dir))
config.substitutions.append(("%python", "python3"))
if os.path.isdir(os.path.join(config.shared_dir, "models")):
    config.available_features.add("shared")
