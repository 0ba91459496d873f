"""The EPICS Archiver Appliance's ``EPICSEvent.proto`` (archiver-appliance/epicsarchiverap, its licence in
``LICENSE.EPICSEvent.txt``) and the module protoc generated from it, committed: ``EPICSEvent_pb2`` (messages
``PayloadInfo``, ``ScalarDouble``, ... and the ``PayloadType`` enum), used by :mod:`tern.archiver.pb`.

Regenerate (protoc 35.1 from the ``grpcio-tools`` wheel, in a throwaway venv; the generated code needs protobuf
>= its gencode version, see pyproject.toml)::

    python -m grpc_tools.protoc -I tern/archiver/proto --python_out=tern/archiver/proto \\
        --pyi_out=tern/archiver/proto tern/archiver/proto/EPICSEvent.proto
"""
