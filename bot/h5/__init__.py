"""H5 pages of the service (绑定, 修改密码), opened from links in the chat through WeChat's web
authorisation. Protocol at the edge: the pages call dialogs/binding.py and storage, never the
other way round."""
